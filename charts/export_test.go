package charts

// For the external tests of this directory (package charts_test), which
// may import what imports charts.
var (
	LoadDodai   = loadDodai
	RenderDodai = renderDodai
	Apply       = apply
)
