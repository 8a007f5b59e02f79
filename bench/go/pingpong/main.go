// pingpong: unbuffered round trips between main and one goroutine.
package main

import (
	"fmt"
	"os"
	"time"
)

func main() {
	n := 1000000
	if q := os.Getenv("BENCH_QUICK"); q != "" && q != "0" {
		n /= 10
	}
	ping, pong := make(chan int), make(chan int)
	go func() {
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
	fmt.Printf("RESULT pingpong %.1f ns/op\n", float64(dt.Nanoseconds())/float64(n))
}
