/* signal.c: SIGQUIT dumps every goroutine (and exits 2, as Go); SIGINT interrupts even an idle loop. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "csp.h"

volatile int csp_sigpending;
static volatile sig_atomic_t got_int, got_quit;
static lua_State *sig_mainL;  /* the state that took the signals (the first to load csp) */
static csp_Sched *sig_S;
static uv_async_t *sig_async; /* wakes the loop; unref'd, so deadlock detection stays exact */
static int quit_continues;    /* CSP_SIGQUIT=dump */

static void quit_dump(lua_State *L, csp_Sched *S) {
  csp_sched_dump(L, S, "SIGQUIT: quit\n\n");
  if (S->port && lua_checkstack(L, 4)) csp_port_dumps(L, S);  /* every csp.thread's too, as Go's */
  fprintf(stderr, "%s\n", lua_tostring(L, -1));
  fflush(stderr);
  lua_pop(L, 1);
  if (!quit_continues) exit(2);  /* exit, not _exit: a trace being written ends well-formed */
}

static int quit_dump_l(lua_State *L) {
  quit_dump(L, (csp_Sched *)lua_touserdata(L, 1));
  return 0;
}

/* On a thread of its own: L's traceback in the dump then shows L's frames only. */
static void quit_dump_thread(lua_State *L, csp_Sched *S) {
  lua_State *T = lua_newthread(L);
  lua_pushcfunction(T, quit_dump_l);
  lua_pushlightuserdata(T, S);
  lua_pcall(T, 1, 0, 0);
  lua_pop(L, 1);
}

/* Main's debug hook, the only one csp sets (one owner, so neither use loses the other's): the
** CSP_LEAKS report asks for return events until the script's chunk returns (leak.c), a signal
** for every event until the code running Lua, main (not the loop) or the goroutine the loop
** resumed, acts at once on it, as lua.c's own SIGINT hook does. A goroutine's thread inherits
** the hook of the thread that made it: its first event here removes it. */
static void main_hook(lua_State *L, lua_Debug *ar) {
  int ret = csp_leak_atret(L, ar);
  lua_sethook(L, ret ? main_hook : NULL, ret ? LUA_MASKRET : 0, 0);  /* then the flags: a signal
                                                                       ** from now on sets it again */
  if (sig_S == NULL) return;
  if (L == sig_mainL ? sig_S->depth > 0 : sig_S->cur == NULL || sig_S->cur->L != L)
    return;  /* the loop acts on csp_sigpending */
  if (got_quit) {
    got_quit = 0;
    csp_sigpending = got_int;
    if (L == sig_mainL) quit_dump(L, sig_S);
    else quit_dump_thread(L, sig_S);  /* a goroutine's own frames, as the loop's dump shows them */
  }
  if (got_int) {
    got_int = 0;
    csp_sigpending = 0;
    if (L == sig_mainL) csp_leak_interrupted(L, sig_S);
    luaL_error(L, "interrupted!");  /* in a goroutine: its panic, which ends the program */
  }
}

void csp_signal_hookret(lua_State *mainL) {
  lua_sethook(mainL, main_hook, LUA_MASKRET, 0);
}

static void on_signal(int sig) {
  if (sig == SIGINT) {
    got_int = 1;
    signal(SIGINT, SIG_DFL);  /* a second Ctrl-C kills */
  } else {
    got_quit = 1;
  }
  csp_sigpending = 1;
  lua_sethook(sig_mainL, main_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
  /* A goroutine running Lua code never returns to the loop to see it: the hook goes on its thread
  ** too, unless another is there (goexit's unwinding, the user's debug.sethook): the loop acts
  ** then. main_hook itself may be there, inherited from main. */
  if (sig_S != NULL && sig_S->cur != NULL) {
    lua_Hook h = lua_gethook(sig_S->cur->L);
    if (h == NULL || h == main_hook)
      lua_sethook(sig_S->cur->L, main_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
  }
  uv_async_send(sig_async);
}

static void async_cb(uv_async_t *h) {
  (void)h;  /* its job is to end uv_run: the loop then sees csp_sigpending */
}

/* Called by the loop (csp_sigpending set): SIGQUIT dumps; SIGINT pushes the error to raise. */
int csp_signal_take(lua_State *L, csp_Sched *S) {
  if (S != sig_S) return 0;
  if (got_quit) {
    got_quit = 0;
    quit_dump_thread(L, S);
  }
  csp_sigpending = got_int;
  if (!got_int) return 0;
  got_int = 0;
  csp_sigpending = 0;
  csp_leak_interrupted(L, S);
  lua_pushliteral(L, "interrupted!");
  return 1;
}

static struct sigaction old_int, old_quit;

static int taken(int sig, struct sigaction *old) {
  struct sigaction sa;
  if (sigaction(sig, NULL, old) != 0 || old->sa_handler == SIG_IGN) return 0;  /* nohup, a host's choice */
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  return sigaction(sig, &sa, NULL) == 0;
}

/* The state closes: the handlers go before the async handle does (closed by the scheduler). */
static int signal_gc(lua_State *L) {
  (void)L;
  if (sig_S == NULL) return 0;
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGQUIT, &old_quit, NULL);
  sig_S = NULL;
  sig_mainL = NULL;
  sig_async = NULL;
  return 0;
}

/* Stack: [module, sched]. Only the first state to load csp takes the signals. */
void csp_signal_open(lua_State *L) {
  static const luaL_Reg sig_meta[] = {{"__gc", signal_gc}, {NULL, NULL}};
  csp_Sched *S = (csp_Sched *)lua_touserdata(L, -1);
  const char *q = getenv("CSP_SIGQUIT");
  if (sig_S != NULL) return;
  sig_async = malloc(sizeof *sig_async);
  if (sig_async == NULL || uv_async_init(S->loop, sig_async, async_cb) != 0) {
    free(sig_async);
    sig_async = NULL;
    return;
  }
  uv_unref((uv_handle_t *)sig_async);
  quit_continues = q && strcmp(q, "dump") == 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  sig_mainL = lua_tothread(L, -1);
  lua_pop(L, 1);
  sig_S = S;
  lua_newuserdatauv(L, 1, 0);  /* made after the scheduler: finalized before it */
  lua_pushvalue(L, -2);  /* signal_gc's upvalue: the scheduler */
  csp_newmeta(L, NULL, NULL, sig_meta);
  lua_remove(L, -2);
  lua_setmetatable(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &sig_S);
  taken(SIGINT, &old_int);
  taken(SIGQUIT, &old_quit);
}
