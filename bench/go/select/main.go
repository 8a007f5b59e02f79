// select: one consumer selects over 4 unbuffered channels fed by 4 producers.
package main

import (
	"fmt"
	"os"
	"time"
)

func producer(ch chan int, n int) {
	for i := 0; i < n; i++ {
		ch <- i
	}
}

func main() {
	n := 2000000
	if q := os.Getenv("BENCH_QUICK"); q != "" && q != "0" {
		n /= 10
	}
	a, b, c, d := make(chan int), make(chan int), make(chan int), make(chan int)
	t0 := time.Now()
	for _, ch := range []chan int{a, b, c, d} {
		go producer(ch, n/4)
	}
	for i := 0; i < n/4*4; i++ {
		select {
		case <-a:
		case <-b:
		case <-c:
		case <-d:
		}
	}
	dt := time.Since(t0)
	fmt.Printf("RESULT select %.1f ns/op\n", float64(dt.Nanoseconds())/float64(n/4*4))
}
