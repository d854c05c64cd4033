using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;

namespace IoMux.AspNetCore;

/// <summary>The listening socket of an endpoint: created and bound here, or inherited (socket activation).</summary>
internal static class ListenSocket
{
    public static Socket Open(EndPoint endpoint, int backlog)
    {
        switch (endpoint)
        {
            case FileHandleEndPoint handle:
            {
                // Socket activation (LISTEN_FDS) or a handle the host passed: already bound and listening. Not
                // owned, as Kestrel's SocketTransportOptions.CreateDefaultBoundListenSocket takes it ("ownsHandle:
                // false ... to avoid side-effects on the handle when disposing the socket"): the descriptor stays
                // open after the listener stops, for the host to use again (a restart, a socket-activated reload).
                var socket = new Socket(new SafeSocketHandle((nint)handle.FileHandle, ownsHandle: false));
                socket.Blocking = false;
                return socket;
            }
            case UnixDomainSocketEndPoint unix:
                return BindAndListen(new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified), unix, backlog);
            case IPEndPoint ip:
            {
                var socket = new Socket(ip.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
                if (ip.Address.Equals(IPAddress.IPv6Any))
                    socket.DualMode = true;
                // No SocketOptionName.ReuseAddress: with it a second app bound the held port and took a share of
                // this one's connections (SO_REUSEPORT semantics on Linux; issue 23, the held-port test of
                // KestrelParityTests failed so) instead of failing with AddressInUseException as on Kestrel's
                // sockets, which do not set it either. .NET's bind sets SO_REUSEADDR for TCP by itself (dotnet/runtime
                // pal_networking.c, SystemNative_Bind: "On Unix, we set SO_REUSEADDR to get the same behavior"), so a
                // restart still binds over TIME_WAIT. The loops share this one listener: nothing needs SO_REUSEPORT.
                return BindAndListen(socket, ip, backlog);
            }
            default:
                throw new NotSupportedException($"The IoMux transport binds IP, Unix-domain and file-handle endpoints, not {endpoint.GetType().Name}.");
        }
    }

    private static Socket BindAndListen(Socket socket, EndPoint endpoint, int backlog)
    {
        try
        {
            socket.Bind(endpoint);
            socket.Listen(backlog);
            socket.Blocking = false;
            return socket;
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.AddressAlreadyInUse)
        {
            socket.Dispose();
            throw new AddressInUseException(e.Message, e); // what Kestrel expects of a transport
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }
}
