#!/bin/sh
echo "$GREETING from $0 $*"
