// timers: n goroutines each sleep a random duration up to 100 ms;
// process CPU time (user+sys, all threads) from the first spawn until all woke.
package main

import (
	"fmt"
	"math/rand"
	"os"
	"sync"
	"syscall"
	"time"
)

func cpu() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func main() {
	n := 100000
	if q := os.Getenv("BENCH_QUICK"); q != "" && q != "0" {
		n /= 10
	}
	rng := rand.New(rand.NewSource(1))
	var wg sync.WaitGroup
	c0 := cpu()
	for i := 0; i < n; i++ {
		d := time.Duration(rng.Int63n(int64(100 * time.Millisecond)))
		wg.Add(1)
		go func() {
			time.Sleep(d)
			wg.Done()
		}()
	}
	wg.Wait()
	dc := cpu() - c0
	fmt.Printf("RESULT timers %.1f ms CPU\n", float64(dc.Nanoseconds())/1e6)
}
