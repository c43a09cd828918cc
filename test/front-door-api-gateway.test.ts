import { frontDoorSuite } from './conformance/front-door-suite.ts';

/** The front-door behaviours (test/conformance/front-door-suite.ts) on the api-gateway front. */
frontDoorSuite('api-gateway');
