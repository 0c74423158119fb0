module github.com/loramesh/loramesh-core

go 1.26.0
