// waitgroup: wg.Add(1) before each go statement, wg.Done() in the goroutine, one wg.Wait()
// for n goroutines. ns per goroutine.
package main

import (
	"fmt"
	"os"
	"sync"
	"time"
)

func main() {
	n := 1000000
	if q := os.Getenv("BENCH_QUICK"); q != "" && q != "0" {
		n /= 10
	}
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			wg.Done()
		}()
	}
	wg.Wait()
	dt := time.Since(t0)
	fmt.Printf("RESULT waitgroup %.1f ns/op\n", float64(dt.Nanoseconds())/float64(n))
}
