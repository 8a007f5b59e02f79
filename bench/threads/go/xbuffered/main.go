// xbuffered: a producer streams integers to a consumer through a cap 1024 channel; items/s.
package main

import (
	"fmt"
	"os"
	"time"
)

func main() {
	n := 2000000
	if q := os.Getenv("BENCH_QUICK"); q != "" && q != "0" {
		n /= 10
	}
	ch := make(chan int, 1024)
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
	got := <-done
	dt := time.Since(t0)
	if got != n {
		panic("lost items")
	}
	fmt.Printf("RESULT xbuffered %.0f items/s\n", float64(n)/dt.Seconds())
}
