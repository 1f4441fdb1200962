import { existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/**
 * A folder laid out as the kubelet lays out a mounted Secret, and updated as it updates one:
 * each file is a symlink through `..data`, which points at a timestamped folder of the current
 * contents; an update writes a new folder and swaps `..data` by renaming a new symlink over it,
 * so a reader sees all the old files or all the new ones. What a service watching its mounted
 * certificates or keys meets in a cluster.
 */
export class SecretVolume {
  #version = 0;
  readonly #names = new Set<string>();

  private constructor(readonly dir: string) {}

  static create(files: Record<string, string | Buffer>, dir = mkdtempSync(path.join(tmpdir(), 'gateway-secret-'))): SecretVolume {
    const volume = new SecretVolume(dir);
    volume.update(files);
    for (const name of Object.keys(files)) symlinkSync(path.join('..data', name), path.join(dir, name));
    return volume;
  }

  /** The path a service is given for `name`. */
  file(name: string): string {
    return path.join(this.dir, name);
  }

  /**
   * Replaces every file at once: files not named keep their contents, names new to the Secret
   * appear, and those in `drop` go (a key removed from the Secret).
   */
  update(files: Record<string, string | Buffer>, drop: readonly string[] = []): void {
    const previous = this.#version > 0 ? path.join(this.dir, readlinkSync(path.join(this.dir, '..data'))) : undefined;
    this.#version += 1;
    const next = `..${Date.now()}_${this.#version}`;
    mkdirSync(path.join(this.dir, next));
    if (previous) {
      for (const name of this.#names) if (!(name in files) && !drop.includes(name)) writeFileSync(path.join(this.dir, next, name), readFileSync(path.join(previous, name)), { mode: 0o600 });
    }
    for (const [name, contents] of Object.entries(files)) {
      writeFileSync(path.join(this.dir, next, name), contents, { mode: 0o600 });
      this.#names.add(name);
    }
    symlinkSync(next, path.join(this.dir, '..data_tmp'));
    renameSync(path.join(this.dir, '..data_tmp'), path.join(this.dir, '..data'));
    if (previous) {
      for (const name of Object.keys(files)) if (!existsSync(path.join(this.dir, name))) symlinkSync(path.join('..data', name), path.join(this.dir, name));
      for (const name of drop) {
        rmSync(path.join(this.dir, name), { force: true });
        this.#names.delete(name);
      }
      rmSync(previous, { recursive: true, force: true });
    }
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
