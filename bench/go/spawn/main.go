// spawn: start n goroutines at once; each counts itself, the last one closes done.
// Cost per goroutine of create + run + exit.
package main

import (
	"fmt"
	"os"
	"sync/atomic"
	"time"
)

func worker(count *int64, n int64, done chan struct{}) {
	if atomic.AddInt64(count, 1) == n {
		close(done)
	}
}

func main() {
	n := int64(1000000)
	if q := os.Getenv("BENCH_QUICK"); q != "" && q != "0" {
		n /= 10
	}
	var count int64
	done := make(chan struct{})
	t0 := time.Now()
	for i := int64(0); i < n; i++ {
		go worker(&count, n, done)
	}
	<-done
	dt := time.Since(t0)
	fmt.Printf("RESULT spawn %.1f ns/op\n", float64(dt.Nanoseconds())/float64(n))
}
