/* The sandbox's pause process for runtime tests: holds the pod's namespaces open, reaps any child
 * (it is pid 1 of the sandbox) and exits on SIGTERM or SIGINT. Built static: the image has nothing else. */
#include <signal.h>
#include <stddef.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) {
  (void)sig;
  _exit(0);
}

static void reap(int sig) {
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(void) {
  struct sigaction term = {.sa_handler = stop};
  struct sigaction child = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP};
  if (sigaction(SIGTERM, &term, NULL) != 0 || sigaction(SIGINT, &term, NULL) != 0 || sigaction(SIGCHLD, &child, NULL) != 0)
    return 1;
  for (;;)
    pause();
}
