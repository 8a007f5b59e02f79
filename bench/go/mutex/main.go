// mutex: uncontended Lock + Unlock in one goroutine; ns per pair.
package main

import (
	"fmt"
	"os"
	"sync"
	"time"
)

func main() {
	n := 10000000
	if q := os.Getenv("BENCH_QUICK"); q != "" && q != "0" {
		n /= 10
	}
	var mu sync.Mutex
	count := 0
	t0 := time.Now()
	for i := 0; i < n; i++ {
		mu.Lock()
		count++
		mu.Unlock()
	}
	dt := time.Since(t0)
	if count != n {
		panic("count")
	}
	fmt.Printf("RESULT mutex %.1f ns/op\n", float64(dt.Nanoseconds())/float64(n))
}
