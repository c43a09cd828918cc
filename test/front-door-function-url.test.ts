import { frontDoorSuite } from './conformance/front-door-suite.ts';

/** The front-door behaviours (test/conformance/front-door-suite.ts) on the function-url front. */
frontDoorSuite('function-url');
