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
            {
                var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    socket.Bind(unix);
                    socket.Listen(backlog);
                    socket.Blocking = false;
                    return socket;
                }
                catch (SocketException e) when (e.SocketErrorCode == SocketError.AddressAlreadyInUse)
                {
                    socket.Dispose();
                    throw new AddressInUseException(e.Message, e);
                }
            }
            case IPEndPoint ip:
            {
                var socket = new Socket(ip.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
                try
                {
                    if (ip.Address.Equals(IPAddress.IPv6Any))
                        socket.DualMode = true;
                    socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
                    socket.Bind(ip);
                    socket.Listen(backlog);
                    socket.Blocking = false;
                    return socket;
                }
                catch (SocketException e) when (e.SocketErrorCode == SocketError.AddressAlreadyInUse)
                {
                    socket.Dispose();
                    throw new AddressInUseException(e.Message, e);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
            }
            default:
                throw new NotSupportedException($"The IoMux transport binds IP, Unix-domain and file-handle endpoints, not {endpoint.GetType().Name}.");
        }
    }
}
