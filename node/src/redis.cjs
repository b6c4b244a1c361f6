// `ratebound/redis` (CommonJS): Node 20.19+ and 22.12+ require() the ES module build directly.
module.exports = require("./redis.js");
