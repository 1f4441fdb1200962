/**
 * The layering, checked in `make test` (`npm run depcruise`): services never import each other,
 * packages never import services, the SDK imports only what runs in a browser, and no module is
 * part of an import cycle. `test/depcruise/rules.test.ts` shows each rule failing on a violation.
 */
module.exports = {
  forbidden: [
    {
      name: 'no-cycles',
      severity: 'error',
      comment: 'An import cycle makes load order matter and hides which module owns what.',
      from: {},
      to: { circular: true },
    },
    {
      name: 'no-service-to-service',
      severity: 'error',
      comment: 'Services talk over gRPC and NATS, never by importing each other; shared code goes to packages/.',
      from: { path: '^services/([^/]+)/' },
      to: { path: '^services/([^/]+)/', pathNot: '^services/$1/' },
    },
    {
      name: 'no-package-to-service',
      severity: 'error',
      comment: 'packages/ are the layer below the services.',
      from: { path: '^packages/' },
      to: { path: '^services/' },
    },
    {
      name: 'sdk-browser-only',
      severity: 'error',
      comment:
        "The SDK runs in customers' browsers: no Node built-in, and of our packages only the generated protocol and the browser-safe modules of common (bundled into the SDK's published build by packages/sdk/build.mjs, which also fails on any other package).",
      from: { path: '^packages/sdk/src/', pathNot: ['\\.test\\.ts$', '^packages/sdk/src/testing/'] },
      to: {
        dependencyTypesNot: ['type-only'],
        path: ['^packages/(common|cluster|testing)/', '^services/'],
        pathNot: ['^packages/common/src/(errors|protocol|runtime/backoff|media/quality)\\.ts$'],
      },
    },
    {
      name: 'sdk-no-node-builtins',
      severity: 'error',
      comment: "The SDK runs in customers' browsers.",
      from: { path: '^packages/sdk/src/', pathNot: ['\\.test\\.ts$', '^packages/sdk/src/testing/'] },
      to: { dependencyTypes: ['core'] },
    },
    {
      name: 'no-test-code-in-production',
      severity: 'error',
      comment: 'Production code never imports tests, their support or the test harness.',
      from: { path: '^(packages|services)/[^/]+/src/', pathNot: ['\\.test\\.ts$', '^packages/testing/', '^(packages|services)/[^/]+/src/testing/'] },
      to: { path: ['\\.test\\.ts$', '^test/', '^packages/testing/', '^(packages|services)/[^/]+/src/testing/'] },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: ['node_modules', '^packages/sdk/dist/', '\\.tmp/', '\\.data/'] },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    combinedDependencies: true,
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      extensions: ['.ts', '.js', '.mjs', '.cjs', '.json'],
      mainFields: ['module', 'main', 'types'],
    },
  },
};
