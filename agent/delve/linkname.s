// This file lets trapguard_linux.go declare execPtraceFunc without a body:
// the Go toolchain allows that only in packages with assembly files.
