/*
 * bf-exit: reports the test guest's result to the host: writes CODE to QEMU's isa-debug-exit
 * port (0xf4), so that QEMU exits with status CODE * 2 + 1 (1: passed).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/io.h>

int main(int argc, char **argv)
{
    int code = argc > 1 ? atoi(argv[1]) : 0;

    if (ioperm(0xf4, 4, 1) < 0) {
        perror("bf-exit: ioperm");
        return 1;
    }
    outb(code, 0xf4);
    return 1;       /* not reached with an isa-debug-exit device */
}
