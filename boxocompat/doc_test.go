package boxocompat_test

import (
	"os"
	"strings"
	"testing"
)

// docs/migrating-from-boxo.md shows Example verbatim, so the code a reader
// copies is code that compiles and runs.
func TestMigrationGuideShowsTheExample(t *testing.T) {
	src, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../docs/migrating-from-boxo.md")
	if err != nil {
		t.Fatal(err)
	}
	example := between(t, string(src), "\nfunc Example() {", "\n}\n")
	shown := between(t, string(doc), "<!-- example: boxocompat Example -->\n```go\n", "```\n")
	if strings.TrimSpace(shown) != strings.TrimSpace("func Example() {"+example+"\n}") {
		t.Fatalf("docs/migrating-from-boxo.md shows another Example than example_test.go's:\n%s", shown)
	}
}

// between returns what lies in s after the first start and before the next
// end.
func between(t *testing.T, s, start, end string) string {
	t.Helper()
	_, after, ok := strings.Cut(s, start)
	if !ok {
		t.Fatalf("%q not found", start)
	}
	in, _, ok := strings.Cut(after, end)
	if !ok {
		t.Fatalf("%q not found after %q", end, start)
	}
	return in
}
