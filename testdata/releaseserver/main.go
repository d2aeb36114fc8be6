// Command releaseserver serves lavap builds as GitHub release assets for the
// demo (scripts/demo): DIR/<version>/lavap as
// /v<version>/lavap-v<version>-<os>-<arch>, with a sha256sum.txt per release.
// It logs every request on stderr, so that the demo shows when a release is
// downloaded, and writes its address (127.0.0.1:port) to -addr-file.
package main

import (
	"crypto/sha256"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/lavavisor/lavavisor/chain"
)

func main() {
	dir := flag.String("dir", "", "folder of <version>/lavap builds")
	addrFile := flag.String("addr-file", "", "file to write the listening address to")
	flag.Parse()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(*addrFile, []byte(ln.Addr().String()), 0o644); err != nil {
		log.Fatal(err)
	}
	log.SetFlags(0)
	log.SetPrefix("release server | ")
	log.Fatal(http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.Printf("GET %s", r.URL.Path)
		parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")
		if len(parts) != 2 {
			http.NotFound(w, r)
			return
		}
		v, err := chain.ParseTag(parts[0]) // never a path from the URL unchecked
		if err != nil {
			http.NotFound(w, r)
			return
		}
		b, err := os.ReadFile(filepath.Join(*dir, v.String(), "lavap"))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		name := fmt.Sprintf("lavap-v%s-%s-%s", v, runtime.GOOS, runtime.GOARCH)
		switch parts[1] {
		case "sha256sum.txt":
			fmt.Fprintf(w, "%x  %s\n", sha256.Sum256(b), name)
		case name:
			w.Write(b)
		default:
			http.NotFound(w, r)
		}
	})))
}
