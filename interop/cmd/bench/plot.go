package main

import (
	"errors"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Colours of the plot's three kinds of bar.
var (
	plotOursColor = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff} // blue
	plotBoxoColor = color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff} // orange
	plotRawColor  = color.RGBA{R: 0x9e, G: 0x9e, B: 0x9e, A: 0xff} // grey
)

const (
	plotWidth     = 8 * vg.Inch
	plotMinHeight = 5 * vg.Inch
	// plotLabelWidth is how many characters of a case a line of its
	// label holds; plotLabelLines is how many lines it may take.
	plotLabelWidth = 30
	plotLabelLines = 3
	// plotDPI is the resolution of a PNG: 8 in × 5 in is 1200 × 750 pixels.
	plotDPI = 150
	// plotMargin is kept free at the right edge of the image.
	plotMargin = vg.Length(10) // points
)

// writePlot draws the rows of the suite named "throughput" whose Unit is "MB/s" as a grouped horizontal bar chart and writes it to name (.svg or .png by extension).
//
// Each row is a group of bars, first row at the top: "ours" and "boxo" for a
// comparison row, one grey "raw libp2p stream" bar (its Ours side) for a
// "ceiling: ..." row. A bar's length is the median and its error bar spans
// min–max. A side without a number (no samples, or Text such as "timeout")
// gets no bar but a note in its place.
func writePlot(name string, results []SuiteResult) error {
	switch ext := strings.ToLower(filepath.Ext(name)); ext {
	case ".svg", ".png":
	default:
		return fmt.Errorf("plot %s: unsupported format %q, want .svg or .png", name, ext)
	}
	var suite *SuiteResult
	for i := range results {
		if results[i].Name == "throughput" {
			suite = &results[i]
			break
		}
	}
	if suite == nil {
		return errors.New("plot: no throughput suite in the results")
	}
	var rows []Row
	for _, r := range suite.Rows {
		if r.Unit == "MB/s" {
			rows = append(rows, r)
		}
	}
	if len(rows) == 0 {
		return errors.New("plot: the throughput suite has no MB/s rows")
	}

	n := len(rows)
	// Keep about 8 × 5 in, but give many groups room to breathe.
	height := max(plotMinHeight, vg.Length(n)*0.55*vg.Inch+1.2*vg.Inch)
	// The plotting area is what is left after the title and the x axis; a
	// group's share of it sets the bar thickness.
	groupHeight := (height - 1*vg.Inch) / vg.Length(n)
	barWidth := min(groupHeight*0.36, 0.35*vg.Inch)

	p := plot.New()
	p.Title.Text = "Loopback throughput (MB/s, median and min–max)"
	p.Title.Padding = vg.Points(8)
	p.X.Label.Text = "MB/s"
	p.X.Min = 0
	grid := plotter.NewGrid()
	grid.Horizontal.Color = nil // a line through every group's centre only confuses
	p.Add(grid)                 // first, so that it lies under the bars

	labels := make([]string, n)
	var ours, boxo, raw *plotter.BarChart // the first of each kind, for the legend
	type note struct {
		y      float64
		offset vg.Length
		text   string
	}
	var notes []note // sides without a number, written where their bar would be
	maxX := 0.0
	for i, r := range rows {
		y := float64(n - 1 - i) // first row at the top
		labels[n-1-i] = plotLabel(r.Case)
		type side struct {
			name   string
			stat   Stat
			color  color.Color
			offset vg.Length
			first  **plotter.BarChart
		}
		var sides []side
		if strings.HasPrefix(r.Case, "ceiling") {
			sides = []side{{"raw", r.Ours, plotRawColor, 0, &raw}}
		} else {
			sides = []side{
				{"ours", r.Ours, plotOursColor, barWidth / 2, &ours},
				{"boxo", r.Boxo, plotBoxoColor, -barWidth / 2, &boxo},
			}
		}
		for _, s := range sides {
			if !s.stat.ok() {
				why := s.stat.Text
				if why == "" {
					why = "no data"
				}
				notes = append(notes, note{y, s.offset, fmt.Sprintf(" %s: %s", s.name, why)})
				continue
			}
			// Recompute from the samples, in case the row was not finished.
			st := s.stat
			st.finish()
			bar, err := plotter.NewBarChart(plotter.Values{st.Median}, barWidth)
			if err != nil {
				return fmt.Errorf("plot: %s %s: %w", r.Case, s.name, err)
			}
			bar.Horizontal = true
			bar.XMin = y
			bar.Offset = s.offset
			bar.Color = s.color
			bar.LineStyle.Width = 0
			p.Add(bar)
			if *s.first == nil {
				*s.first = bar
			}

			eb, err := plotter.NewXErrorBars(spread{x: st.Median, y: y, low: st.Median - st.Min, high: st.Max - st.Median})
			if err != nil {
				return fmt.Errorf("plot: %s %s: %w", r.Case, s.name, err)
			}
			eb.CapWidth = barWidth * 0.6
			eb.LineStyle.Width = vg.Points(1.2)
			p.Add(shifted{eb, s.offset})
			maxX = math.Max(maxX, st.Max)
		}
	}
	if maxX == 0 {
		return errors.New("plot: no MB/s row of the throughput suite has a number to draw")
	}
	for _, nt := range notes {
		l, err := plotter.NewLabels(plotter.XYLabels{XYs: plotter.XYs{{X: 0, Y: nt.y}}, Labels: []string{nt.text}})
		if err != nil {
			return fmt.Errorf("plot: %w", err)
		}
		l.TextStyle[0].Font.Size = vg.Points(9)
		l.TextStyle[0].Color = color.Gray{Y: 0x50}
		l.TextStyle[0].YAlign = draw.YCenter
		l.Offset = vg.Point{Y: nt.offset}
		p.Add(l)
	}

	p.NominalY(labels...)
	p.Y.Min, p.Y.Max = -0.5, float64(n)-0.5
	p.X.Padding = 0 // the half group below the last bars is gap enough
	p.Y.Tick.Label.Font.Size = vg.Points(9)
	// Leave the right part free for the legend (top right).
	p.X.Max = maxX * 1.4
	p.Legend.Top = true
	p.Legend.TextStyle.Font.Size = vg.Points(10)
	p.Legend.ThumbnailWidth = 0.25 * vg.Inch
	for _, e := range []struct {
		name string
		bar  *plotter.BarChart
	}{{"ours", ours}, {"boxo", boxo}, {"raw libp2p stream", raw}} {
		if e.bar != nil {
			p.Legend.Add(e.name, e.bar)
		}
	}

	if err := savePlot(p, plotWidth, height, name); err != nil {
		return fmt.Errorf("plot %s: %w", name, err)
	}
	return nil
}

// savePlot writes p to name as SVG, or as PNG at plotDPI rather than
// gonum's default 96 dpi, which leaves small labels blurred.
func savePlot(p *plot.Plot, w, h vg.Length, name string) (err error) {
	var c vg.CanvasWriterTo
	if strings.EqualFold(filepath.Ext(name), ".png") {
		c = vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(plotDPI))}
	} else {
		c = vgsvg.New(w, h)
	}
	// gonum draws up to the right edge; keep a margin there.
	p.Draw(draw.Crop(draw.New(c), 0, -plotMargin, 0, 0))
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	_, err = c.WriteTo(f)
	return err
}

// plotLabel shortens a case name for the y axis: it wraps it on spaces into
// at most plotLabelLines lines of at most plotLabelWidth characters, as even
// in length as it can, and trims what does not fit with an ellipsis.
func plotLabel(s string) string {
	words := strings.Fields(s)
	total := len([]rune(strings.Join(words, " ")))
	if total <= plotLabelWidth {
		return strings.Join(words, " ")
	}
	// The narrowest width up to plotLabelWidth that needs no more lines than
	// the full width does gives the most even lines.
	lines := wrapWords(words, plotLabelWidth)
	for w := total / len(lines); w < plotLabelWidth; w++ {
		if l := wrapWords(words, w); len(l) <= len(lines) {
			lines = l
			break
		}
	}
	if len(lines) > plotLabelLines {
		lines = lines[:plotLabelLines]
		lines[plotLabelLines-1] += " …"
	}
	for i, l := range lines {
		if r := []rune(l); len(r) > plotLabelWidth+2 {
			lines[i] = string(r[:plotLabelWidth]) + "…"
		}
	}
	return strings.Join(lines, "\n")
}

// wrapWords fills lines greedily with words up to width characters; a word
// longer than width gets a line of its own.
func wrapWords(words []string, width int) []string {
	var lines []string
	line := ""
	for _, w := range words {
		switch {
		case line == "":
			line = w
		case len([]rune(line))+1+len([]rune(w)) <= width:
			line += " " + w
		default:
			lines = append(lines, line)
			line = w
		}
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}

// spread is one bar's min–max as a plotter.XErrorer: the error bar of the
// value x at category y runs from x-low to x+high.
type spread struct{ x, y, low, high float64 }

func (s spread) Len() int                      { return 1 }
func (s spread) XY(int) (float64, float64)     { return s.x, s.y }
func (s spread) XError(int) (float64, float64) { return s.low, s.high }

// shifted draws error bars off their category by off along the y axis, as
// plotter.BarChart.Offset does for a bar, so that each lies on its own bar.
type shifted struct {
	*plotter.XErrorBars
	off vg.Length
}

func (s shifted) Plot(c draw.Canvas, p *plot.Plot) {
	c.Min.Y += s.off
	c.Max.Y += s.off
	s.XErrorBars.Plot(c, p)
}

func (s shifted) GlyphBoxes(p *plot.Plot) []plot.GlyphBox {
	bs := s.XErrorBars.GlyphBoxes(p)
	for i := range bs {
		bs[i].Rectangle.Min.Y += s.off
		bs[i].Rectangle.Max.Y += s.off
	}
	return bs
}
