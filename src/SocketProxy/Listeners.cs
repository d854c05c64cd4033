using IoMux.Interop;

namespace IoMux.SocketProxy;

/// <summary>The <c>--listen</c> extension: the proxy binds its own listening socket, for use without a service manager.</summary>
public static class Listeners
{
    /// <summary>Binds and listens on <paramref name="address"/> (HOST:PORT with a numeric host, or a Unix socket
    /// path); returns the non-blocking descriptor.</summary>
    /// <exception cref="FormatException">The address is not numeric.</exception>
    /// <exception cref="PosixException">bind or listen failed (EADDRINUSE...).</exception>
    public static int Bind(string address) =>
        // A deep backlog: it is where clients wait while the proxy is at --connections-max.
        Sockets.Listen(Endpoint(address), backlog: 4096);

    /// <summary>The endpoint <paramref name="address"/> names (what the command line checks before binding).</summary>
    /// <exception cref="FormatException">Neither a numeric HOST:PORT nor a socket path.</exception>
    public static System.Net.EndPoint Endpoint(string address) =>
        BackendTarget.Parse(address).FixedEndpoint
            ?? throw new FormatException($"--listen {address}: give a numeric address (127.0.0.1:8080, [::1]:8080) or a socket path.");
}
