// Loaded by mocha (--require) before postmark.js's published integration tests.
//
// 1. The tests import the library as `../../src/index` (the repository layout); the npm package ships
//    that source compiled as `dist/`, so those imports load the published build: the same code users run.
// 2. Every client the tests construct talks to Posthouse: `HttpClient.DefaultOptions` is the
//    library's documented switch ("You may modify these values and new clients will use them").
//    POSTHOUSE_URL (e.g. http://127.0.0.1:8080) is set by tests/contract/test_postmark_js.py.
"use strict";

const Module = require("module");
const path = require("path");

const packageRoot = path.dirname(require.resolve("postmark/package.json"));
const sourceDir = path.join(packageRoot, "src") + path.sep;
const buildDir = path.join(packageRoot, "dist") + path.sep;

const resolveFilename = Module._resolveFilename;
Module._resolveFilename = function (request, parent, ...rest) {
  if (request.startsWith(".") && parent && parent.filename) {
    const target = path.resolve(path.dirname(parent.filename), request);
    if (target.startsWith(sourceDir)) {
      request = buildDir + target.slice(sourceDir.length);
    }
  }
  return resolveFilename.call(this, request, parent, ...rest);
};

const target = process.env.POSTHOUSE_URL;
if (!target) {
  throw new Error("POSTHOUSE_URL is not set: the tests would talk to api.postmarkapp.com");
}
const url = new URL(target);
const postmark = require("postmark");
postmark.Models.HttpClient.DefaultOptions.useHttps = url.protocol === "https:";
postmark.Models.HttpClient.DefaultOptions.requestHost = url.host;
