// A mocha reporter that writes one JSON result per published test, for tests/contract/test_postmark_js.py.
//
// Every test of the loaded files is listed before the run starts, so a test that never runs (its suite's
// `before` hook failed) is still reported, as failed with the hook's error. A failing `after` hook fails
// the tests of its suite too: their cleanup against Posthouse did not work. Output:
//   {"tests": [{"id", "file", "title", "state": passed|failed|pending|not run, "error"}]}
// to the file named by `--reporter-option output=<path>`; a line per test goes to stdout for people.
"use strict";

const fs = require("fs");
const path = require("path");
const Mocha = require("mocha");

const { EVENT_RUN_BEGIN, EVENT_RUN_END, EVENT_TEST_PASS, EVENT_TEST_FAIL, EVENT_TEST_PENDING } =
  Mocha.Runner.constants;

function describeError(err) {
  if (!err) return "";
  let text = `${err.name || "Error"}: ${err.message}`;
  if (err.statusCode !== undefined || err.code !== undefined) {
    text += ` (HTTP ${err.statusCode}, ErrorCode ${err.code})`;
  }
  if (err.showDiff !== false && (err.expected !== undefined || err.actual !== undefined)) {
    text += ` [expected ${JSON.stringify(err.expected)}, actual ${JSON.stringify(err.actual)}]`;
  }
  return text;
}

function allTests(suite) {
  return suite.tests.concat(...suite.suites.map(allTests));
}

function PosthouseReporter(runner, options) {
  Mocha.reporters.Base.call(this, runner, options);
  const output = (options.reporterOption || options.reporterOptions || {}).output;
  if (!output) throw new Error("reporter.js needs --reporter-option output=<path>");
  const results = new Map(); // mocha Test -> result

  runner.once(EVENT_RUN_BEGIN, () => {
    const seen = new Map();
    for (const test of allTests(runner.suite)) {
      const file = path.basename(test.file || "");
      let id = [file, ...test.titlePath()].join(" > ");
      const count = (seen.get(id) || 0) + 1;
      seen.set(id, count);
      if (count > 1) id += ` (${count})`; // postmark.js has two tests with one title
      results.set(test, { id, file, title: test.fullTitle(), state: "not run", error: "" });
    }
  });

  // A test missing from the listing at the start (none should be) is reported under its own title.
  const resultOf = (test) => {
    if (!results.has(test)) {
      results.set(test, { id: test.fullTitle(), file: path.basename(test.file || ""), title: test.fullTitle(),
        state: "not run", error: "" });
    }
    return results.get(test);
  };

  runner.on(EVENT_TEST_PASS, (test) => {
    resultOf(test).state = "passed";
    process.stdout.write(`  ok       ${resultOf(test).id}\n`);
  });

  runner.on(EVENT_TEST_PENDING, (test) => {
    resultOf(test).state = "pending";
    process.stdout.write(`  skipped  ${resultOf(test).id}\n`);
  });

  runner.on(EVENT_TEST_FAIL, (test, err) => {
    const message = describeError(err);
    if (test.type === "hook") {
      for (const member of allTests(test.parent)) {
        const result = resultOf(member);
        if (result.state === "not run" || result.state === "passed") {
          result.state = "failed";
          result.error = `${test.title} failed: ${message}`;
        }
      }
      process.stdout.write(`  FAILED   ${test.fullTitle()}: ${message}\n`);
      return;
    }
    const result = resultOf(test);
    result.state = "failed";
    result.error = message;
    process.stdout.write(`  FAILED   ${result.id}: ${message}\n`);
  });

  runner.once(EVENT_RUN_END, () => {
    fs.writeFileSync(output, JSON.stringify({ tests: [...results.values()] }, null, 1));
  });
}

module.exports = PosthouseReporter;
