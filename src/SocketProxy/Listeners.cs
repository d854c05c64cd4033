using System.Net;
using IoMux.Interop;

namespace IoMux.SocketProxy;

/// <summary>The <c>--listen</c> extension: the proxy binds its own listening socket, for use without a service manager.</summary>
public static class Listeners
{
    /// <summary>Binds and listens on <paramref name="address"/> (HOST:PORT with a numeric host, or a Unix socket
    /// path); returns the non-blocking descriptor.</summary>
    /// <exception cref="FormatException">The address is not numeric.</exception>
    /// <exception cref="PosixException">bind or listen failed (EADDRINUSE...).</exception>
    public static unsafe int Bind(string address)
    {
        var endpoint = BackendTarget.Parse(address).FixedEndpoint
            ?? throw new FormatException($"--listen {address}: give a numeric address (127.0.0.1:8080, [::1]:8080) or a socket path.");
        int fd = Sockets.OpenStreamSocket(Sockets.NativeFamily(endpoint));
        try
        {
            if (endpoint is IPEndPoint)
                Sockets.SetIntOption(fd, Sockets.SOL_SOCKET, Sockets.SO_REUSEADDR, 1);
            var sockaddr = endpoint.Serialize();
            fixed (byte* buffer = sockaddr.Buffer.Span)
            {
                if (Sockets.bind(fd, buffer, (uint)sockaddr.Size) != 0)
                    throw Errno.Fail("bind", address);
            }
            // SOMAXCONN: the backlog is where clients wait while the proxy is at --connections-max.
            if (Sockets.listen(fd, 4096) != 0)
                throw Errno.Fail("listen", address);
            return fd;
        }
        catch
        {
            LibC.CloseQuietly(fd);
            throw;
        }
    }
}
