// pplocked: bench/go/pingpong's round trips with each goroutine locked to its own OS thread
// (runtime.LockOSThread), so every hand-off crosses threads as csp's xpingpong does; the plain
// P=2 twin keeps both goroutines on one P (runnext hand-off) and never crosses.
package main

import (
	"fmt"
	"os"
	"runtime"
	"time"
)

func main() {
	n := 200000
	if q := os.Getenv("BENCH_QUICK"); q != "" && q != "0" {
		n /= 10
	}
	runtime.LockOSThread()
	ping, pong := make(chan int), make(chan int)
	go func() {
		runtime.LockOSThread()
		for i := 0; i < n; i++ {
			pong <- <-ping
		}
	}()
	t0 := time.Now()
	for i := 0; i < n; i++ {
		ping <- i
		<-pong
	}
	dt := time.Since(t0)
	fmt.Printf("RESULT pplocked %.1f ns/op\n", float64(dt.Nanoseconds())/float64(n))
}
