// Command fakelavap stands in for a lavap release in the upgrade tests. What it
// does is read from a trailer appended to its own executable, so one build gives
// every variant (and each variant has its own sha256):
//
//	"\n#fakelavap:version=6.2.5\n"  `version` prints 6.2.5
//	"\n#fakelavap:noversion\n"      `version` fails like an old release without it
//	"\n#fakelavap:hang\n"           `version` never answers
//
// With no trailer it behaves as noversion.
package main

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"time"
)

const marker = "\n#fakelavap:"

func main() {
	mode := trailer()
	if len(os.Args) < 2 || os.Args[1] != "version" {
		fmt.Fprintln(os.Stderr, "fakelavap: only `version` is implemented")
		os.Exit(2)
	}
	switch {
	case strings.HasPrefix(mode, "version="):
		fmt.Println(strings.TrimPrefix(mode, "version="))
	case mode == "hang":
		for {
			time.Sleep(time.Hour)
		}
	default:
		fmt.Fprintln(os.Stderr, `Error: unknown command "version" for "lavap"`)
		os.Exit(1)
	}
}

func trailer() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	f, err := os.Open(exe)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() < 128 {
		return ""
	}
	buf := make([]byte, 128)
	if _, err := f.ReadAt(buf, fi.Size()-128); err != nil {
		return ""
	}
	i := bytes.LastIndex(buf, []byte(marker))
	if i < 0 {
		return ""
	}
	return strings.TrimSpace(string(buf[i+len(marker):]))
}
