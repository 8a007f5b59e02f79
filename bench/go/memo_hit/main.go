// memo_hit: gopl.io/ch9/memo4's Get (mutex + entry with a ready channel) on keys already
// cached (1000 string keys, round robin); ns per Get.
package main

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

type Func func(key string) (interface{}, error)

type result struct {
	value interface{}
	err   error
}

type entry struct {
	res   result
	ready chan struct{} // closed when res is ready
}

type Memo struct {
	f     Func
	mu    sync.Mutex // guards cache
	cache map[string]*entry
}

func New(f Func) *Memo {
	return &Memo{f: f, cache: make(map[string]*entry)}
}

func (memo *Memo) Get(key string) (value interface{}, err error) {
	memo.mu.Lock()
	e := memo.cache[key]
	if e == nil {
		e = &entry{ready: make(chan struct{})}
		memo.cache[key] = e
		memo.mu.Unlock()
		e.res.value, e.res.err = memo.f(key)
		close(e.ready)
	} else {
		memo.mu.Unlock()
		<-e.ready
	}
	return e.res.value, e.res.err
}

func main() {
	n := 10000000
	if q := os.Getenv("BENCH_QUICK"); q != "" && q != "0" {
		n /= 10
	}
	const k = 1000
	m := New(func(key string) (interface{}, error) { return len(key), nil })
	keys := make([]string, k)
	for i := range keys {
		keys[i] = "https://example.com/page/" + strconv.Itoa(i+1)
		m.Get(keys[i])
	}
	sum := 0
	t0 := time.Now()
	j := 0
	for i := 0; i < n; i++ {
		v, _ := m.Get(keys[j])
		sum += v.(int)
		j++
		if j == k {
			j = 0
		}
	}
	dt := time.Since(t0)
	if sum <= 0 {
		panic("sum")
	}
	fmt.Printf("RESULT memo_hit %.1f ns/op\n", float64(dt.Nanoseconds())/float64(n))
}
