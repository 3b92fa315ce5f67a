package message

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzUnmarshal checks that Unmarshal never panics, fails only with its
// documented errors, and that whatever it accepts encodes back (Size
// agreeing with Marshal) to bytes that decode to the same message. Seeds
// covering every field and version are in testdata/fuzz/FuzzUnmarshal.
func FuzzUnmarshal(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Unmarshal(data)
		if err != nil {
			if m != nil {
				t.Fatalf("Unmarshal returned a message along with error %v", err)
			}
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error %v is neither ErrMalformed nor ErrTooLarge", err)
			}
			return
		}
		enc := m.Marshal(V120)
		if n := m.Size(V120); n != len(enc) {
			t.Fatalf("Size = %d, len(Marshal) = %d", n, len(enc))
		}
		again, err := Unmarshal(enc)
		if err != nil {
			t.Fatalf("re-encoded message does not decode: %v\n% x", err, enc)
		}
		if d := diffMessages(m, again); d != "" {
			t.Fatalf("re-encoded message decodes differently: %s", d)
		}
		if !bytes.Equal(again.Marshal(V120), enc) {
			t.Fatal("encoding is not stable across a round trip")
		}
		// Older versions carry less, but what they carry must survive.
		for _, v := range []Version{V100, V110} {
			old, err := Unmarshal(m.Marshal(v))
			if err != nil {
				t.Fatalf("%s encoding does not decode: %v", v, err)
			}
			if d := diffMessages(asSeenBy(m, v), old); d != "" {
				t.Fatalf("%s encoding decodes differently: %s", v, d)
			}
		}
	})
}
