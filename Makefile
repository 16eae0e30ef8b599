# The developer's commands, the same ones CI runs (.ci/run):
#   make build    the binary in build/sealpost
#   make test     every test, in random order (the e2e tests skip a missing
#                 program unless SEALPOST_E2E=require)
#   make check    gofmt, go vet, staticcheck, go mod tidy
#   make fuzz     each fuzz target for FUZZTIME (15s); the corpus is in testdata/fuzz
#   make bench    the package benchmarks; e2e/bench/compare.sh has the side-by-side table
#   make deb      build/sealpost_VERSION_ARCH.deb (see deploy/)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZTIME    ?= 15s

.PHONY: build test check fmt vet staticcheck tidy fuzz bench deb clean
build:
	mkdir -p build
	go build -o build/sealpost ./cmd/sealpost

test:
	go test -shuffle=on ./...

check: fmt vet staticcheck tidy

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	go vet ./...

staticcheck:
	go run $(STATICCHECK) ./...

tidy:
	go mod tidy -diff

fuzz:
	FUZZTIME=$(FUZZTIME) .ci/fuzz

bench:
	go test -run '^$$' -bench . ./rules/... ./archive/... ./relay/...

deb:
	$(MAKE) -C deploy deb

clean:
	rm -rf build
