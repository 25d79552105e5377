/* The exec floor: a static binary that does nothing. No CNI plug-in can start faster than this. */
int main(void) { return 0; }
