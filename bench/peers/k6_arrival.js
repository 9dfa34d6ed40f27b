// k6's side of bench/arrival.sh: GET / at a constant arrival rate.
// RATE (iterations/s), DURATION, PRE (preAllocatedVUs), MAX (maxVUs), URL.
import http from 'k6/http';

export const options = {
  scenarios: {
    open: {
      executor: 'constant-arrival-rate',
      rate: Number(__ENV.RATE),
      timeUnit: '1s',
      duration: __ENV.DURATION,
      preAllocatedVUs: Number(__ENV.PRE),
      maxVUs: Number(__ENV.MAX),
    },
  },
};

export default function () {
  http.get(__ENV.URL + '/');
}
