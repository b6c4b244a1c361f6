// Node (CommonJS): Node ≥ 20.19 can require() the ES module build directly.
module.exports = require("./node.js");
