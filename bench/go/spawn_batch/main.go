// spawn_batch: n goroutines in batches of 1000; each sends on a buffered done
// channel, main receives the batch before starting the next. Cost per
// goroutine of create + run + exit with at most 1000 alive.
package main

import (
	"fmt"
	"os"
	"time"
)

const batch = 1000

func worker(done chan bool) {
	done <- true
}

func main() {
	n := 1000000
	if q := os.Getenv("BENCH_QUICK"); q != "" && q != "0" {
		n /= 10
	}
	done := make(chan bool, batch)
	t0 := time.Now()
	for b := 0; b < n/batch; b++ {
		for i := 0; i < batch; i++ {
			go worker(done)
		}
		for i := 0; i < batch; i++ {
			<-done
		}
	}
	dt := time.Since(t0)
	fmt.Printf("RESULT spawn_batch %.1f ns/op\n", float64(dt.Nanoseconds())/float64(n/batch*batch))
}
