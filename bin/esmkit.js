#!/usr/bin/env node

// Thin launcher: the CLI lives in the compiled library (npm run build).
require("../build/src/cli/main.js")
  .main(process.argv.slice(2))
  .then((code) => {
    process.exitCode = code;
  });
