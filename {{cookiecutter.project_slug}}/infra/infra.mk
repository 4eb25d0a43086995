# AWS targets: bootstrap, teardown and the deploy pipeline's steps (included by the Makefile).
