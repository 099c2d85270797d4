// This file lets inlined.go declare dwarfTree without a body: the Go
// toolchain allows that only in packages with assembly files.
