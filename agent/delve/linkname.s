// This file lets trapguard_linux.go and attachall_linux.go declare Delve's
// unexported functions (execPtraceFunc, addThread, the steps of its
// attach) without a body: the Go toolchain allows that only in packages
// with assembly files.
