/* The bench's runtime stand-in: execs plug-ins the way containerd's Go runtime does (posix_spawn,
 * wait), timing each from spawn to reaped exit, and replays a netlink batch from this resident
 * process (the kernel floor: setns, socket, send, drain). Not a test.
 *
 * Reads tab-separated lines on stdin, answers on stdout:
 *   X <id> <stdin file|-> <n env> <env...> <argv...>   queue an exec (stdout, stderr → /dev/null)
 *   N <id> <netns path> <batch file>                   queue a replay of a netlink batch into a netns
 *   G <concurrency>                                    run the queue: "<id> <ms> <status> <start> <cpu>"
 *                                                      per job, then "D <wall ms>"; status is the exit
 *                                                      code, 128+signal, or -errno for a failed replay;
 *                                                      start is CLOCK_MONOTONIC ms (as Node's hrtime);
 *                                                      cpu is the child's user+system ms (rusage), or
 *                                                      the replay's own thread CPU ms
 * With concurrency 1 jobs run in queue order (interleaved paths); replays need concurrency 1. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <sched.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { MAX_JOBS = 4096, MAX_FIELDS = 64 };

struct job {
  char kind; /* 'X' or 'N' */
  char *id;
  char *in;  /* stdin file, or the batch file for a replay */
  char *ns;  /* replay: netns path */
  char **env;
  char **argv;
  pid_t pid;
  double t0;
};

static struct job jobs[MAX_JOBS];
static int njobs;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void die(const char *what) {
  fprintf(stderr, "driver: %s: %s\n", what, strerror(errno));
  exit(2);
}

static char **copy_fields(char **f, int n) {
  char **out = calloc((size_t)n + 1, sizeof *out);
  if (!out) die("calloc");
  for (int i = 0; i < n; i++) out[i] = strdup(f[i]);
  return out;
}

static pid_t spawn_job(struct job *j) {
  posix_spawn_file_actions_t fa;
  if (posix_spawn_file_actions_init(&fa) != 0) die("posix_spawn_file_actions_init");
  posix_spawn_file_actions_addopen(&fa, 0, strcmp(j->in, "-") == 0 ? "/dev/null" : j->in, O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  pid_t pid;
  j->t0 = now_ms();
  int rc = posix_spawn(&pid, j->argv[0], &fa, NULL, j->argv, j->env);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    errno = rc;
    die(j->argv[0]);
  }
  return pid;
}

static int exit_status(int st) { return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st); }

static double tv_ms(struct timeval tv) { return (double)tv.tv_sec * 1e3 + (double)tv.tv_usec / 1e3; }

static double thread_cpu_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* What a resident process must do to commit a batch in a pod netns; 0 or -errno. */
static int replay(const char *nspath, const unsigned char *batch, size_t len) {
  static unsigned char buf[64 * 1024];
  int home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  int nsfd = open(nspath, O_RDONLY | O_CLOEXEC);
  if (home < 0 || nsfd < 0 || setns(nsfd, CLONE_NEWNET) != 0) die(nspath);
  int sock = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
  if (sock < 0 || setns(home, CLONE_NEWNET) != 0) die("netlink socket in the netns");
  close(nsfd);
  close(home);
  struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
  if (sendto(sock, batch, len, 0, (struct sockaddr *)&kernel, sizeof kernel) != (ssize_t)len) die("sendto");
  int result = 1;
  while (result > 0) { /* drain until the one ACK (or the first error) */
    ssize_t n = recv(sock, buf, sizeof buf, 0);
    if (n < 0) die("recv");
    int left = (int)n;
    for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_type != NLMSG_ERROR) continue;
      result = ((struct nlmsgerr *)NLMSG_DATA(h))->error;
      break;
    }
  }
  close(sock);
  return result;
}

static unsigned char *read_file(const char *path, size_t *len) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) die(path);
  unsigned char *b = malloc((size_t)st.st_size);
  if (!b || read(fd, b, (size_t)st.st_size) != st.st_size) die(path);
  close(fd);
  *len = (size_t)st.st_size;
  return b;
}

static void run_replay(struct job *j) {
  size_t len;
  unsigned char *batch = read_file(j->in, &len); /* read before the clock: the agent has it in memory */
  double t0 = now_ms(), c0 = thread_cpu_ms();
  int rc = replay(j->ns, batch, len);
  printf("%s\t%.4f\t%d\t%.4f\t%.4f\n", j->id, now_ms() - t0, rc, t0, thread_cpu_ms() - c0);
  free(batch);
}

static void finish(pid_t pid, int st, const struct rusage *ru) {
  double t1 = now_ms();
  for (int i = 0; i < njobs; i++) {
    if (jobs[i].pid != pid) continue;
    printf("%s\t%.4f\t%d\t%.4f\t%.4f\n", jobs[i].id, t1 - jobs[i].t0, exit_status(st), jobs[i].t0, tv_ms(ru->ru_utime) + tv_ms(ru->ru_stime));
    jobs[i].pid = 0;
    return;
  }
}

/* Waits for any one child and reports it. */
static void reap_one(void) {
  int st;
  struct rusage ru;
  pid_t p = wait4(-1, &st, 0, &ru);
  if (p < 0) die("wait4");
  finish(p, st, &ru);
}

static void run_queue(int concurrency) {
  double t0 = now_ms();
  int running = 0;
  for (int i = 0; i < njobs; i++) {
    struct job *j = &jobs[i];
    if (j->kind == 'N') {
      if (concurrency != 1) die("replays need concurrency 1");
      run_replay(j);
      continue;
    }
    for (; running >= concurrency; running--) reap_one();
    j->pid = spawn_job(j);
    running++;
  }
  for (; running > 0; running--) reap_one();
  printf("D\t%.4f\n", now_ms() - t0);
  fflush(stdout);
  for (int i = 0; i < njobs; i++) {
    free(jobs[i].id);
    free(jobs[i].in);
    free(jobs[i].ns);
    for (char **p = jobs[i].env; p && *p; p++) free(*p);
    for (char **p = jobs[i].argv; p && *p; p++) free(*p);
    free(jobs[i].env);
    free(jobs[i].argv);
  }
  njobs = 0;
}

int main(void) {
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  while ((n = getline(&line, &cap, stdin)) > 0) {
    if (line[n - 1] == '\n') line[n - 1] = 0;
    char *f[MAX_FIELDS];
    int nf = 0;
    for (char *save = NULL, *t = strtok_r(line, "\t", &save); t && nf < MAX_FIELDS; t = strtok_r(NULL, "\t", &save)) f[nf++] = t;
    if (nf == 0) continue;
    if (f[0][0] == 'G' && nf == 2) {
      run_queue(atoi(f[1]) > 0 ? atoi(f[1]) : 1);
      continue;
    }
    if (njobs == MAX_JOBS) die("too many queued jobs");
    struct job *j = &jobs[njobs];
    memset(j, 0, sizeof *j);
    if (f[0][0] == 'N' && nf == 4) {
      *j = (struct job){.kind = 'N', .id = strdup(f[1]), .ns = strdup(f[2]), .in = strdup(f[3])};
    } else if (f[0][0] == 'X' && nf >= 5 && 4 + atoi(f[3]) < nf) {
      int ne = atoi(f[3]);
      *j = (struct job){.kind = 'X', .id = strdup(f[1]), .in = strdup(f[2]), .env = copy_fields(f + 4, ne), .argv = copy_fields(f + 4 + ne, nf - 4 - ne)};
    } else {
      fprintf(stderr, "driver: malformed line starting '%s' (%d fields)\n", f[0], nf);
      return 2;
    }
    njobs++;
  }
  free(line);
  return 0;
}
