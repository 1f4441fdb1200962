/*
 * The kernel's own cost of moving one UDP packet over the local stack: a sender process blasts
 * packets of a given size at a receiver process for a fixed time, one syscall per packet
 * (sendto/recv) or batched (sendmmsg/recvmmsg), from an unconnected socket as an SFU's. Each process's user and kernel CPU comes from
 * getrusage, so the figures are CPU per packet, not wall time. On one machine the kernel hands
 * each packet to the receiver's socket inside the sender's send call, so the sender's CPU per
 * packet is what forwarding one packet costs a process that does nothing else: the floor an SFU
 * is compared with.
 *
 * usage: udp-floor <ipv4 address> <payload bytes> <seconds> <batch (1 = no batching)>
 * prints one JSON object.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_BATCH 64

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static double cpu_seconds(struct rusage *r, int kernel) {
  struct timeval *t = kernel ? &r->ru_stime : &r->ru_utime;
  return t->tv_sec + t->tv_usec / 1e6;
}

static void die(const char *what) {
  perror(what);
  exit(1);
}

/* Receives until the sender's end marker (a 1-byte datagram), then writes its counts to fd. */
static void receive(int sock, int batch, size_t size, int report_fd) {
  static char buffers[MAX_BATCH][65536];
  struct mmsghdr messages[MAX_BATCH];
  struct iovec iov[MAX_BATCH];
  memset(messages, 0, sizeof messages);
  for (int i = 0; i < MAX_BATCH; i++) {
    iov[i].iov_base = buffers[i];
    iov[i].iov_len = sizeof buffers[i];
    messages[i].msg_hdr.msg_iov = &iov[i];
    messages[i].msg_hdr.msg_iovlen = 1;
  }
  struct rusage before, after;
  getrusage(RUSAGE_SELF, &before);
  unsigned long long received = 0;
  int done = 0;
  while (!done) {
    if (batch == 1) {
      ssize_t n = recv(sock, buffers[0], sizeof buffers[0], 0);
      if (n < 0) die("recv");
      if ((size_t)n != size) done = 1;
      else received++;
    } else {
      int n = recvmmsg(sock, messages, batch, MSG_WAITFORONE, NULL);
      if (n < 0) die("recvmmsg");
      for (int i = 0; i < n; i++) {
        if (messages[i].msg_len != size) done = 1;
        else received++;
      }
    }
  }
  getrusage(RUSAGE_SELF, &after);
  double counts[3] = {(double)received, cpu_seconds(&after, 0) - cpu_seconds(&before, 0), cpu_seconds(&after, 1) - cpu_seconds(&before, 1)};
  if (write(report_fd, counts, sizeof counts) != sizeof counts) die("write");
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: %s <ipv4 address> <payload bytes> <seconds> <batch>\n", argv[0]);
    return 2;
  }
  const char *address = argv[1];
  size_t size = strtoul(argv[2], NULL, 10);
  double seconds = atof(argv[3]);
  int batch = atoi(argv[4]);
  if (size < 2 || size > 65000 || batch < 1 || batch > MAX_BATCH || seconds <= 0) {
    fprintf(stderr, "bad arguments\n");
    return 2;
  }

  int receiver = socket(AF_INET, SOCK_DGRAM, 0);
  if (receiver < 0) die("socket");
  /* A large buffer, so the receiver's scheduling gaps do not turn into drops. */
  int buffer = 16 << 20;
  if (setsockopt(receiver, SOL_SOCKET, SO_RCVBUFFORCE, &buffer, sizeof buffer) < 0) setsockopt(receiver, SOL_SOCKET, SO_RCVBUF, &buffer, sizeof buffer);
  struct sockaddr_in to = {.sin_family = AF_INET};
  if (inet_pton(AF_INET, address, &to.sin_addr) != 1) die("inet_pton");
  if (bind(receiver, (struct sockaddr *)&to, sizeof to) < 0) die("bind");
  socklen_t length = sizeof to;
  getsockname(receiver, (struct sockaddr *)&to, &length);

  int report[2];
  if (pipe(report) < 0) die("pipe");
  pid_t child = fork();
  if (child < 0) die("fork");
  if (child == 0) {
    receive(receiver, batch, size, report[1]);
    _exit(0);
  }
  close(receiver);

  int sender = socket(AF_INET, SOCK_DGRAM, 0);
  if (sender < 0) die("socket");
  /* Not connected: an SFU sends to many peers from one socket, each send naming its destination. */
  static char payload[65536];
  memset(payload, 0x5a, size);
  struct mmsghdr messages[MAX_BATCH];
  struct iovec iov = {.iov_base = payload, .iov_len = size};
  memset(messages, 0, sizeof messages);
  for (int i = 0; i < MAX_BATCH; i++) {
    messages[i].msg_hdr.msg_iov = &iov;
    messages[i].msg_hdr.msg_iovlen = 1;
    messages[i].msg_hdr.msg_name = &to;
    messages[i].msg_hdr.msg_namelen = sizeof to;
  }

  struct rusage before, after;
  getrusage(RUSAGE_SELF, &before);
  double start = now();
  unsigned long long sent = 0;
  while (now() - start < seconds) {
    for (int round = 0; round < 64; round++) {
      if (batch == 1) {
        if (sendto(sender, payload, size, 0, (struct sockaddr *)&to, sizeof to) == (ssize_t)size) sent++;
      } else {
        int n = sendmmsg(sender, messages, batch, 0);
        if (n > 0) sent += n;
      }
    }
  }
  double elapsed = now() - start;
  getrusage(RUSAGE_SELF, &after);
  /* End marker: repeated, since a full receive buffer may drop one. */
  char end = 0;
  double counts[3] = {0, 0, 0};
  for (int i = 0; i < 1000; i++) {
    sendto(sender, &end, 1, 0, (struct sockaddr *)&to, sizeof to);
    struct timespec pause = {0, 1000000};
    nanosleep(&pause, NULL);
    int status;
    if (waitpid(child, &status, WNOHANG) == child) break;
  }
  if (read(report[0], counts, sizeof counts) != sizeof counts) die("read");
  waitpid(child, NULL, 0);

  double send_user = cpu_seconds(&after, 0) - cpu_seconds(&before, 0);
  double send_kernel = cpu_seconds(&after, 1) - cpu_seconds(&before, 1);
  double received = counts[0];
  printf(
      "{\"payload_bytes\":%zu,\"batch\":%d,\"seconds\":%.2f,\"sent\":%llu,\"received\":%.0f,"
      "\"loss_percent\":%.2f,\"send_us_per_packet\":%.3f,\"send_kernel_share_percent\":%.0f,"
      "\"receive_us_per_packet\":%.3f,\"send_and_receive_us_per_packet\":%.3f}\n",
      size, batch, elapsed, sent, received, sent ? 100.0 * (sent - received) / sent : 0.0,
      sent ? (send_user + send_kernel) / sent * 1e6 : 0.0,
      send_user + send_kernel > 0 ? 100.0 * send_kernel / (send_user + send_kernel) : 0.0,
      received ? (counts[1] + counts[2]) / received * 1e6 : 0.0,
      sent && received ? ((send_user + send_kernel) / sent + (counts[1] + counts[2]) / received) * 1e6 : 0.0);
  return 0;
}
