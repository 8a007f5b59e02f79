// parked: resident memory per goroutine blocked on a channel receive.
package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
)

// rss returns VmRSS in bytes, the same source the Lua side reads.
func rss() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		panic(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "VmRSS:") {
			kb, err := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			if err != nil {
				panic(err)
			}
			return kb * 1024
		}
	}
	panic("no VmRSS")
}

func parked(ch chan int, started *int64) {
	atomic.AddInt64(started, 1)
	<-ch
}

func main() {
	n := int64(100000)
	if q := os.Getenv("BENCH_QUICK"); q != "" && q != "0" {
		n /= 10
	}
	ch := make(chan int)
	var started int64
	runtime.GC()
	before := rss()
	for i := int64(0); i < n; i++ {
		go parked(ch, &started)
	}
	for atomic.LoadInt64(&started) < n {
		runtime.Gosched()
	}
	runtime.GC()
	after := rss()
	fmt.Printf("RESULT parked %.1f bytes\n", float64(after-before)/float64(n))
	close(ch)
}
