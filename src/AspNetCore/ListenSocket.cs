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
                // Socket activation (LISTEN_FDS) or a handle the host passed: already bound and listening.
                var socket = new Socket(new SafeSocketHandle((nint)handle.FileHandle, ownsHandle: true));
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
                socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
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
