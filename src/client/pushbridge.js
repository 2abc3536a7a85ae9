/* pushbridge browser client (in progress) */
