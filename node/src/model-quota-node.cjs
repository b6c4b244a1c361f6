// `ratebound/model-quota` for Node (CommonJS, Node ≥ 20.19 requires the ES module).
module.exports = require("./model-quota-node.js");
