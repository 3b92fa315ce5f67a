package message

import (
	"fmt"
	"testing"
)

// benchWants is a message of 100 want-have entries with CIDv1 raw CIDs, a
// typical client message.
func benchWants(b *testing.B) *Message {
	m := &Message{}
	for i := range 100 {
		m.Wantlist = append(m.Wantlist, Entry{
			Cid:          testCid(b, prefixRaw, i),
			Priority:     int32(1000 - i),
			WantType:     WantHave,
			SendDontHave: true,
		})
	}
	return m
}

// benchBlocks is a full server message: 15 blocks of 256 KiB (the common
// chunk size). Sixteen would be 4 MiB of data alone, over MaxMessageSize
// once the fields' overhead is added, and Unmarshal would reject it.
func benchBlocks(b *testing.B) *Message {
	m := &Message{}
	for i := range 15 {
		data := make([]byte, 256<<10)
		copy(data, fmt.Sprint("block ", i))
		m.Blocks = append(m.Blocks, newBlock(b, prefixRaw, string(data)))
	}
	return m
}

func benchMarshal(b *testing.B, m *Message) {
	b.SetBytes(int64(m.Size(V120)))
	b.ReportAllocs()
	for b.Loop() {
		_ = m.Marshal(V120)
	}
}

func benchAppendMarshal(b *testing.B, m *Message) {
	buf := make([]byte, 0, m.Size(V120))
	b.SetBytes(int64(m.Size(V120)))
	b.ReportAllocs()
	for b.Loop() {
		buf = m.AppendMarshal(buf[:0], V120)
	}
}

func benchUnmarshal(b *testing.B, m *Message) {
	data := m.Marshal(V120)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Unmarshal(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMarshal100Wants(b *testing.B)             { benchMarshal(b, benchWants(b)) }
func BenchmarkAppendMarshal100Wants(b *testing.B)       { benchAppendMarshal(b, benchWants(b)) }
func BenchmarkUnmarshal100Wants(b *testing.B)           { benchUnmarshal(b, benchWants(b)) }
func BenchmarkMarshal15Blocks256KiB(b *testing.B)       { benchMarshal(b, benchBlocks(b)) }
func BenchmarkAppendMarshal15Blocks256KiB(b *testing.B) { benchAppendMarshal(b, benchBlocks(b)) }
func BenchmarkUnmarshal15Blocks256KiB(b *testing.B)     { benchUnmarshal(b, benchBlocks(b)) }

// BenchmarkSplit100Wants measures packing 100 wants into ~1 KiB messages.
func BenchmarkSplit100Wants(b *testing.B) {
	m := benchWants(b)
	b.ReportAllocs()
	for b.Loop() {
		_ = m.Split(V120, 1024)
	}
}
