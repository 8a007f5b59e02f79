// sieve: the concurrent prime sieve of golang.org/doc/play/sieve.go, first n primes.
package main

import (
	"fmt"
	"os"
	"time"
)

func generate(ch chan<- int) {
	for i := 2; ; i++ {
		ch <- i
	}
}

func filter(in <-chan int, out chan<- int, prime int) {
	for {
		i := <-in
		if i%prime != 0 {
			out <- i
		}
	}
}

func main() {
	n := 3000
	if q := os.Getenv("BENCH_QUICK"); q != "" && q != "0" {
		n /= 10
	}
	t0 := time.Now()
	ch := make(chan int)
	go generate(ch)
	prime := 0
	for i := 0; i < n; i++ {
		prime = <-ch
		ch1 := make(chan int)
		go filter(ch, ch1, prime)
		ch = ch1
	}
	dt := time.Since(t0)
	if n == 3000 && prime != 27449 {
		fmt.Fprintf(os.Stderr, "3000th prime: got %d, want 27449\n", prime)
		os.Exit(1)
	}
	fmt.Printf("RESULT sieve %.1f ms\n", float64(dt.Nanoseconds())/1e6)
}
