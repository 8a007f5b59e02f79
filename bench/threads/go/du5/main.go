// du5: the twin of examples/du5.lua: main lists each root and hands its subdirectories to
// GOMAXPROCS walkers; a walker walks a whole subtree as du3 does (a goroutine per directory, a
// 20-token semaphore of its own) and sends back one total. Go needs no threads for this (du3
// already runs on every P): the twin keeps du5's shape so the two compare like for like.
// Prints the same line as du5.lua: "N files  X.X GB", or "N files  B bytes" with -b.
package main

import (
	"flag"
	"fmt"
	"io/ioutil"
	"os"
	"path/filepath"
	"runtime"
	"sync"
)

var exact = flag.Bool("b", false, "print the exact byte count")

type total struct{ files, bytes int64 }

func main() {
	flag.Parse()
	roots := flag.Args()
	if len(roots) == 0 {
		roots = []string{"."}
	}
	jobs, totals := make(chan string, 1024), make(chan total, 1024)
	var workers sync.WaitGroup
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for dir := range jobs {
				totals <- walkTree(dir)
			}
		}()
	}
	go func() {
		for _, root := range roots {
			var t total
			for _, entry := range readDir(root) {
				if entry.IsDir() {
					jobs <- filepath.Join(root, entry.Name())
				} else {
					t.files, t.bytes = t.files+1, t.bytes+entry.Size()
				}
			}
			totals <- t
		}
		close(jobs)
		workers.Wait()
		close(totals)
	}()
	var nfiles, nbytes int64
	for t := range totals {
		nfiles, nbytes = nfiles+t.files, nbytes+t.bytes
	}
	if *exact {
		fmt.Printf("%d files  %d bytes\n", nfiles, nbytes)
	} else {
		fmt.Printf("%d files  %.1f GB\n", nfiles, float64(nbytes)/1e9)
	}
}

// walkTree: du3's walk of one subtree, summed in the walker.
func walkTree(root string) total {
	sema := make(chan struct{}, 20)
	var n sync.WaitGroup
	var mu sync.Mutex
	var t total
	var walkDir func(dir string)
	walkDir = func(dir string) {
		defer n.Done()
		sema <- struct{}{}
		entries := readDir(dir)
		<-sema
		var files, bytes int64
		for _, entry := range entries {
			if entry.IsDir() {
				n.Add(1)
				go walkDir(filepath.Join(dir, entry.Name()))
			} else {
				files, bytes = files+1, bytes+entry.Size()
			}
		}
		mu.Lock()
		t.files, t.bytes = t.files+files, t.bytes+bytes
		mu.Unlock()
	}
	n.Add(1)
	go walkDir(root)
	n.Wait()
	return t
}

func readDir(dir string) []os.FileInfo {
	entries, err := ioutil.ReadDir(dir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "du: %v\n", err)
	}
	return entries
}
