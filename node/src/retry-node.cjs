// `ratebound/retry` for Node (CommonJS, Node ≥ 20.19 requires the ES module).
module.exports = require("./retry-node.js");
