//go:build !race

package interop

// raceEnabled reports whether the race detector is on: it slows everything
// several times and stretches scheduling pauses, which some bounds allow for.
const raceEnabled = false
