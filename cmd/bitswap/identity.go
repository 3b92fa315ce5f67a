package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/crypto"
)

// identityFile holds a repo's libp2p private key (libp2p's protobuf
// encoding), so that a node serving a repo keeps its peer ID across
// restarts: provider records and addresses others keep stay valid.
const identityFile = "identity.key"

// loadIdentity returns the key stored in the repo dir, creating an Ed25519
// one the first time.
func loadIdentity(dir string) (crypto.PrivKey, error) {
	p := filepath.Join(dir, identityFile)
	b, err := os.ReadFile(p)
	if err == nil {
		k, err := crypto.UnmarshalPrivateKey(b)
		if err != nil {
			return nil, fmt.Errorf("repo %s: %s is not a libp2p private key: %w", dir, identityFile, err)
		}
		return k, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("repo %s: reading its identity: %w", dir, err)
	}
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, err
	}
	b, err = crypto.MarshalPrivateKey(k)
	if err != nil {
		return nil, err
	}
	// Written to a temporary name first: a crash leaves no half key.
	tmp := p + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("repo %s: storing its identity: %w", dir, err)
	}
	_, werr := f.Write(b)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, p)
	}
	if werr != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("repo %s: storing its identity: %w", dir, werr)
	}
	return k, nil
}
