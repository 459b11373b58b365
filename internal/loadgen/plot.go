package loadgen

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Plot draws throughput (requests started per second) above latency (p50
// and p99 per second) and writes it to path, as SVG or PNG by its extension.
func Plot(r Result, title, path string) error {
	tl := r.Timeline()
	rps, p50, p99 := make(plotter.XYs, len(tl)), make(plotter.XYs, len(tl)), make(plotter.XYs, len(tl))
	for i, s := range tl {
		x := float64(s.At)
		rps[i] = plotter.XY{X: x, Y: float64(s.Requests)}
		p50[i] = plotter.XY{X: x, Y: float64(s.P50) / float64(time.Millisecond)}
		p99[i] = plotter.XY{X: x, Y: float64(s.P99) / float64(time.Millisecond)}
	}
	top := plot.New()
	top.Title.Text = title
	top.Y.Label.Text = "requests/s"
	bottom := plot.New()
	bottom.X.Label.Text = "seconds since start"
	bottom.Y.Label.Text = "latency (ms)"
	for _, l := range []struct {
		p    *plot.Plot
		name string
		xy   plotter.XYs
		dash bool
	}{{top, "requests", rps, false}, {bottom, "p50", p50, false}, {bottom, "p99", p99, true}} {
		line, err := plotter.NewLine(l.xy)
		if err != nil {
			return err
		}
		if l.dash {
			line.Dashes = []vg.Length{vg.Points(4), vg.Points(2)}
		}
		l.p.Add(line)
		l.p.Legend.Add(l.name, line)
	}
	top.Legend.Top, bottom.Legend.Top = true, true
	top.Y.Min, bottom.Y.Min = 0, 0 // differences read true from a zero baseline

	const w, h = 8 * vg.Inch, 6 * vg.Inch
	var dc draw.Canvas
	var save func() error
	switch filepath.Ext(path) {
	case ".svg":
		c := vgsvg.New(w, h)
		dc, save = draw.New(c), func() error { return writeTo(path, c) }
	case ".png":
		c := vgimg.PngCanvas{Canvas: vgimg.New(w, h)}
		dc, save = draw.New(c.Canvas), func() error { return writeTo(path, c) }
	default:
		return fmt.Errorf("plot: %q: use .svg or .png", path)
	}
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadX: vg.Millimeter, PadY: 3 * vg.Millimeter, PadTop: vg.Millimeter, PadBottom: vg.Millimeter, PadLeft: vg.Millimeter, PadRight: vg.Millimeter}
	plots := [][]*plot.Plot{{top}, {bottom}}
	canvases := plot.Align(plots, tiles, dc)
	top.Draw(canvases[0][0])
	bottom.Draw(canvases[1][0])
	return save()
}

func writeTo(path string, w io.WriterTo) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := w.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
