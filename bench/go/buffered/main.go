// buffered: producer (main) -> consumer through a cap 128 channel; cost per item.
package main

import (
	"fmt"
	"os"
	"time"
)

func main() {
	n := 5000000
	if q := os.Getenv("BENCH_QUICK"); q != "" && q != "0" {
		n /= 10
	}
	ch := make(chan int, 128)
	done := make(chan int)
	go func() {
		count := 0
		for range ch {
			count++
		}
		done <- count
	}()
	t0 := time.Now()
	for i := 0; i < n; i++ {
		ch <- i
	}
	close(ch)
	if got := <-done; got != n {
		fmt.Fprintf(os.Stderr, "received %d of %d\n", got, n)
		os.Exit(1)
	}
	dt := time.Since(t0)
	fmt.Printf("RESULT buffered %.1f ns/op\n", float64(dt.Nanoseconds())/float64(n))
}
