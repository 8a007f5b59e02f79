// mutex_handoff: two goroutines take turns on one mutex, each yielding (runtime.Gosched)
// while holding it, so the other is waiting in Lock when it is released. ns per Lock + Unlock.
package main

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"
)

func main() {
	n := 1000000
	if q := os.Getenv("BENCH_QUICK"); q != "" && q != "0" {
		n /= 10
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	count := 0
	worker := func() {
		defer wg.Done()
		for i := 0; i < n; i++ {
			mu.Lock()
			count++
			runtime.Gosched()
			mu.Unlock()
		}
	}
	t0 := time.Now()
	wg.Add(2)
	go worker()
	go worker()
	wg.Wait()
	dt := time.Since(t0)
	if count != 2*n {
		panic("count")
	}
	fmt.Printf("RESULT mutex_handoff %.1f ns/op\n", float64(dt.Nanoseconds())/float64(2*n))
}
