// Package report holds the figures of the flow verification benchmark
// (bench/verify): what it measured, how they are written into
// bench/RESULTS.md, and the targets of issue 24 they are checked
// against. bench/verify writes them as JSON; bench/harness reads them.
package report
